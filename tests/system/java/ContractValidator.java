import java.io.File;
import java.io.FileInputStream;
import java.io.InputStream;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.util.List;
import javax.xml.XMLConstants;
import javax.xml.crypto.dsig.Reference;
import javax.xml.crypto.dsig.XMLSignature;
import javax.xml.crypto.dsig.XMLSignatureFactory;
import javax.xml.crypto.dsig.dom.DOMValidateContext;
import javax.xml.crypto.KeySelector;
import javax.xml.parsers.DocumentBuilderFactory;
import javax.xml.transform.stream.StreamSource;
import javax.xml.validation.Schema;
import javax.xml.validation.SchemaFactory;
import javax.xml.validation.Validator;
import org.w3c.dom.Document;
import org.w3c.dom.NodeList;
import org.xml.sax.SAXException;

/**
 * What a Java customs system does with the contract, with the JDK's own defaults (no feature
 * or property changed):
 *
 *   java ContractValidator schema certex-certificate-1.0.xsd [document.xml ...]
 *     compiles the schema with JAXP's SchemaFactory and validates each document against it;
 *   java ContractValidator verify authority.pem certificate.xml
 *     verifies the certificate's enveloped XML Signature with XMLSignatureFactory, against the
 *     public key of the authority certificate it trusts.
 *
 * Prints "loaded", "valid" or "verified" lines; on a refusal prints "refused: <why>" and exits 1.
 */
public final class ContractValidator {

    public static void main(String[] args) throws Exception {
        try {
            if (args.length >= 2 && args[0].equals("schema")) {
                schema(args);
            } else if (args.length == 3 && args[0].equals("verify")) {
                verify(new File(args[1]), new File(args[2]));
            } else {
                System.err.println("usage: schema XSD [XML ...] | verify AUTHORITY.pem XML");
                System.exit(2);
            }
        } catch (SAXException refused) {
            System.out.println("refused: " + refused.getMessage());
            System.exit(1);
        }
    }

    private static void schema(String[] args) throws Exception {
        SchemaFactory factory = SchemaFactory.newInstance(XMLConstants.W3C_XML_SCHEMA_NS_URI);
        Schema schema = factory.newSchema(new File(args[1]));
        System.out.println("loaded " + args[1]);
        for (int i = 2; i < args.length; i++) {
            Validator validator = schema.newValidator();
            validator.validate(new StreamSource(new File(args[i])));
            System.out.println("valid " + args[i]);
        }
    }

    private static void verify(File authority, File certificate) throws Exception {
        X509Certificate trusted;
        try (InputStream in = new FileInputStream(authority)) {
            trusted = (X509Certificate) CertificateFactory.getInstance("X.509").generateCertificate(in);
        }
        DocumentBuilderFactory builders = DocumentBuilderFactory.newInstance();
        builders.setNamespaceAware(true);
        Document document = builders.newDocumentBuilder().parse(certificate);
        NodeList signatures = document.getDocumentElement()
                .getElementsByTagNameNS(XMLSignature.XMLNS, "Signature");
        if (signatures.getLength() != 1) {
            System.out.println("refused: not signed");
            System.exit(1);
        }
        // Pinned: the key is the trusted authority's, whatever the signature's KeyInfo says.
        DOMValidateContext context = new DOMValidateContext(
                KeySelector.singletonKeySelector(trusted.getPublicKey()), signatures.item(0));
        XMLSignature signature = XMLSignatureFactory.getInstance("DOM").unmarshalXMLSignature(context);
        List<?> references = signature.getSignedInfo().getReferences();
        if (references.size() != 1 || !"".equals(((Reference) references.get(0)).getURI())) {
            System.out.println("refused: the signature does not cover the whole certificate");
            System.exit(1);
        }
        if (!signature.validate(context)) {
            boolean value = signature.getSignatureValue().validate(context);
            boolean digest = ((Reference) references.get(0)).validate(context);
            System.out.println("refused: signature value " + (value ? "valid" : "invalid")
                    + ", digest " + (digest ? "matches" : "mismatch"));
            System.exit(1);
        }
        System.out.println("verified " + certificate + " signed by "
                + trusted.getSubjectX500Principal().getName());
    }
}
